/** The message store in a Map: for unit tests of the state machine and for the cluster simulator. */
import type { MessageStore, StoredMessage } from '../core/broker/types.js';

export class MemoryMessageStore implements MessageStore {
  private readonly topics = new Map<number, Map<number, StoredMessage>>();

  put(topicId: number, message: StoredMessage): void {
    let t = this.topics.get(topicId);
    if (!t) this.topics.set(topicId, (t = new Map()));
    t.set(message.seq, message);
  }

  get(topicId: number, seq: number): StoredMessage | undefined {
    return this.topics.get(topicId)?.get(seq);
  }

  deleteRange(topicId: number, fromSeq: number, toSeqExclusive: number): void {
    const t = this.topics.get(topicId);
    if (!t) return;
    for (let seq = fromSeq; seq < toSeqExclusive; seq++) t.delete(seq);
  }

  dropTopic(topicId: number): void {
    this.topics.delete(topicId);
  }

  /** Messages held, for tests. */
  size(topicId: number): number {
    return this.topics.get(topicId)?.size ?? 0;
  }
}
