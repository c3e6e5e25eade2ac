/**
 * One randomized run (a VOPR "seed"): a fault profile drawn from the seed (swarm testing: each run
 * turns some faults up and others off), a chaos phase of broker clients (publish, pull, ack, nack:
 * broker-workload.ts), reads, partitions, crashes, membership changes and leader transfers, then a
 * healing phase with no faults, after which the group must converge: one leader, every member caught
 * up, every acknowledged command applied everywhere; then a drain (pull and ack until every backlog is
 * empty), after which every member's broker is in the same state and every acknowledged publish was
 * consumed or dead-lettered.
 */
import { BrokerWorkload, drawBrokerProfile, type BrokerProfile } from './broker-workload.js';
import { Cluster, SimViolation, type ClusterOptions, type CoreKnobs } from './cluster.js';
import { quietNetwork, type NetworkOptions } from './network.js';
import { Prng } from './prng.js';

export interface Profile {
  chaosTicks: number;
  healTicksMax: number;
  network: NetworkOptions;
  proposeProbability: number;
  readProbability: number;
  partitionProbability: number;
  healProbability: number;
  crashProbability: number;
  crashAfterPersistShare: number;
  downTicksMax: number;
  confChangeProbability: number;
  transferProbability: number;
  compactEvery: number;
  compactKeep: number;
  tickSkipProbability: number;
  clockSkewMsMax: number;
  stepBatchProbability: number;
  applyOnAppendResponse: boolean;
  earlySendProbability: number;
  earlySendCrashProbability: number;
  /** Share of client operations that are bare Raft proposals (a retention step) rather than broker traffic. */
  rawProposeShare: number;
  drainTicksMax: number;
  broker: BrokerProfile;
}

export function drawProfile(seed: number): Profile {
  const r = new Prng(seed ^ 0x1f2e3d4c);
  const on = (p: number) => r.chance(p);
  return {
    chaosTicks: r.int(300, 600),
    healTicksMax: 800,
    network: {
      dropProbability: on(0.7) ? r.float() * 0.2 : 0,
      duplicateProbability: on(0.5) ? r.float() * 0.1 : 0,
      delayProbability: on(0.7) ? r.float() * 0.5 : 0,
      delayTicksMax: r.int(1, 4),
      longDelayProbability: on(0.4) ? r.float() * 0.02 : 0,
      longDelayTicksMax: r.int(5, 30),
    },
    proposeProbability: 0.1 + r.float() * 0.6,
    readProbability: on(0.6) ? r.float() * 0.1 : 0,
    partitionProbability: on(0.7) ? r.float() * 0.03 : 0,
    healProbability: 0.02 + r.float() * 0.1,
    crashProbability: on(0.6) ? r.float() * (on(0.3) ? 0.05 : 0.02) : 0,
    crashAfterPersistShare: r.float(),
    downTicksMax: r.int(5, 80),
    confChangeProbability: on(0.5) ? r.float() * 0.02 : 0,
    transferProbability: on(0.4) ? r.float() * 0.01 : 0,
    compactEvery: on(0.8) ? r.int(3, 40) : 0,
    compactKeep: on(0.5) ? r.int(0, 5) : 0,
    tickSkipProbability: on(0.3) ? r.float() * 0.1 : 0,
    clockSkewMsMax: on(0.5) ? r.int(1, 1500) : 0,
    rawProposeShare: r.float() * 0.2,
    drainTicksMax: 1500,
    broker: drawBrokerProfile(r),
    stepBatchProbability: on(0.5) ? r.float() * 0.8 : 0,
    applyOnAppendResponse: on(0.5),
    earlySendProbability: on(0.5) ? r.float() : 0,
    earlySendCrashProbability: on(0.3) ? r.float() * 0.02 : 0,
  };
}

export interface RunResult {
  seed: number;
  nodes: number;
  ok: boolean;
  error?: string;
  stack?: string;
  tick: number;
  phase: 'chaos' | 'heal' | 'drain' | 'done';
  acked: number;
  stats: Cluster['stats'] & BrokerWorkload['stats'];
  state: string;
}

export interface RunOptions {
  seed: number;
  nodes: number;
  log?: (line: string) => void;
  /** Override parts of the drawn profile (e.g. to shorten a run). */
  profile?: Partial<Profile>;
  /** Override core options (the defaults are the production ones); for exploration runs. */
  knobs?: Partial<CoreKnobs>;
}

export function replayCommand(seed: number, nodes: number): string {
  return `npm run sim -- --seed ${seed} --nodes ${nodes}`;
}

export function runSeed(o: RunOptions): RunResult {
  const p: Profile = { ...drawProfile(o.seed * 16 + o.nodes), ...o.profile };
  const copts: ClusterOptions = {
    seed: o.seed * 16 + o.nodes,
    nodes: o.nodes,
    network: p.network,
    compactEvery: p.compactEvery,
    compactKeep: p.compactKeep,
    tickSkipProbability: p.tickSkipProbability,
    clockSkewMsMax: p.clockSkewMsMax,
    stepBatchProbability: p.stepBatchProbability,
    applyOnAppendResponse: p.applyOnAppendResponse,
    earlySendProbability: p.earlySendProbability,
    earlySendCrashProbability: p.earlySendCrashProbability,
    knobs: o.knobs,
    log: o.log,
  };
  let phase: RunResult['phase'] = 'chaos';
  let c: Cluster | undefined;
  let b: BrokerWorkload | undefined;
  const result = (ok: boolean, e?: unknown): RunResult => ({
    seed: o.seed,
    nodes: o.nodes,
    ok,
    error: e === undefined ? undefined : e instanceof Error ? `${e.name}: ${e.message}` : String(e),
    stack: e instanceof Error && !(e instanceof SimViolation) ? e.stack : undefined,
    tick: c?.now ?? 0,
    phase,
    acked: c?.acked.size ?? 0,
    stats: { ...(c?.stats ?? ({} as Cluster['stats'])), ...(b?.stats ?? ({} as BrokerWorkload['stats'])) },
    state: c?.describe() ?? '',
  });
  try {
    o.log?.(`profile ${JSON.stringify(p)}`);
    c = new Cluster(copts);
    const cluster = c;
    const w = cluster.rng.fork();
    const broker = (b = new BrokerWorkload(cluster, cluster.rng.fork(), p.broker));
    const minVoters = Math.max(3, o.nodes - 1);
    const maxVoters = o.nodes + 1;
    let partitioned = false;

    for (let t = 0; t < p.chaosTicks; t++) {
      // Clients.
      broker.tick();
      if (w.chance(p.proposeProbability)) {
        const k = w.int(1, 3);
        for (let i = 0; i < k; i++) {
          if (w.chance(p.rawProposeShare)) cluster.propose();
          else broker.operate();
        }
      }
      if (w.chance(p.readProbability)) cluster.readIndex();
      // Network faults.
      if (!partitioned && w.chance(p.partitionProbability)) {
        const ids = cluster.liveNodes().map((n) => n.id);
        const kind = w.int(0, 3);
        const leader = cluster.leader();
        if (kind === 0 && leader) {
          cluster.net.isolate(leader.id, [...cluster.nodes.keys()]);
          cluster.log(`NEMESIS isolate leader n${leader.id}`);
        } else if (kind === 1 && ids.length >= 2) {
          const a = w.pick(ids);
          const b = w.pick(ids.filter((x) => x !== a));
          cluster.net.cut(a, b);
          cluster.log(`NEMESIS one-way cut n${a} -> n${b}`);
        } else {
          const shuffled = w.shuffle([...cluster.nodes.keys()]);
          const k = w.int(1, Math.max(1, Math.floor(shuffled.length / 2)));
          const side = shuffled.slice(0, k);
          cluster.net.partition(side, shuffled.slice(k));
          cluster.log(`NEMESIS partition [${side.join(',')}] | [${shuffled.slice(k).join(',')}]`);
        }
        partitioned = true;
      } else if (partitioned && w.chance(p.healProbability)) {
        cluster.net.heal();
        partitioned = false;
        cluster.log('NEMESIS heal');
      }
      // Crashes.
      if (w.chance(p.crashProbability)) {
        const live = cluster.liveNodes();
        if (live.length > 0) {
          const n = w.chance(0.4) ? (cluster.leader() ?? w.pick(live)) : w.pick(live);
          if (w.chance(p.crashAfterPersistShare)) {
            n.crashAfterPersist = true;
            cluster.log(`NEMESIS n${n.id} will crash in its next ready`);
          } else {
            cluster.crash(n.id, w.int(1, p.downTicksMax));
          }
        }
      }
      // Membership.
      if (w.chance(p.confChangeProbability)) {
        const l = cluster.leader();
        if (l?.core) {
          const conf = l.conf;
          const learner = conf.learners[0];
          if (learner !== undefined) {
            const ln = cluster.nodes.get(learner);
            if (ln?.core && ln.applied + 2 >= l.core.log.committed) cluster.proposeConfChange({ type: 'promote', node: learner });
          } else if (conf.voters.length < maxVoters && (conf.voters.length <= minVoters || w.chance(0.5))) {
            const n = cluster.addNode();
            cluster.proposeConfChange({ type: 'add-learner', node: n.id });
          } else if (conf.voters.length > minVoters) {
            cluster.proposeConfChange({ type: 'remove', node: w.pick(conf.voters) });
          }
        }
      }
      if (w.chance(p.transferProbability)) {
        const l = cluster.leader();
        if (l) {
          const others = l.conf.voters.filter((x) => x !== l.id);
          if (others.length > 0) cluster.transfer(w.pick(others), l);
        }
      }
      cluster.tick();
    }

    // Healing: no more faults; everything that is down comes back.
    phase = 'heal';
    cluster.log('NEMESIS heal all, quiet network, restart everyone');
    cluster.net.heal();
    cluster.net.opts = { ...quietNetwork };
    for (const n of cluster.nodes.values()) {
      n.crashAfterPersist = false;
      if (!n.core && !n.decommissioned) cluster.restart(n.id);
    }
    let progressCmd: string | undefined;
    let why: string | undefined = 'not run';
    for (let t = 0; t < p.healTicksMax; t++) {
      if (progressCmd === undefined || (!cluster.acked.has(progressCmd) && t % 25 === 0)) {
        const r = cluster.propose();
        if (r?.result.ok) progressCmd = r.cmd;
      }
      cluster.tick();
      if (t % 5 === 0 && progressCmd !== undefined && cluster.acked.has(progressCmd)) {
        why = cluster.notConverged();
        if (why === undefined) break;
      }
    }
    if (progressCmd === undefined || !cluster.acked.has(progressCmd)) {
      throw new SimViolation(`liveness: no write acknowledged in ${p.healTicksMax} ticks after healing`);
    }
    if (why !== undefined) throw new SimViolation(`liveness: not converged ${p.healTicksMax} ticks after healing: ${why}`);
    cluster.checkConverged();

    // Drain: consumers take and ack everything left, then every member must agree.
    phase = 'drain';
    cluster.log('DRAIN');
    let drained = false;
    for (let t = 0; t < p.drainTicksMax && !drained; t++) {
      drained = broker.drain();
      if (!drained) cluster.tick();
    }
    if (!drained) throw new SimViolation(`liveness: backlog not drained in ${p.drainTicksMax} ticks (setup ${broker.setupComplete ? 'complete' : 'incomplete'})`);
    why = cluster.notConverged();
    for (let t = 0; t < p.healTicksMax && why !== undefined; t++) {
      cluster.tick();
      why = cluster.notConverged();
    }
    if (why !== undefined) throw new SimViolation(`liveness: not converged after the drain: ${why}`);
    cluster.checkConverged();
    broker.finalCheck(cluster.members().map((id) => cluster.node(id)));
    phase = 'done';
    return result(true);
  } catch (e) {
    return result(false, e);
  }
}
