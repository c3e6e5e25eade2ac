/**
 * Caps the values a `topic` or `subscription` label can take, so that 10,000 subscriptions cannot
 * make 10,000 × (modes × outcomes × ...) series. The first `labelValuesMax` names this process meets
 * get their own label value and keep it; every later name is counted under `otherLabelValue`. Names
 * that no longer exist (deleted) give their place back when the scrape notices (`retain`), so a
 * workload that creates and deletes short-lived subscriptions does not fill the cap for good.
 */

export const metricLimits = {
  /** Distinct topic names, and distinct subscription names, that get a label value of their own. */
  labelValuesMax: 100,
} as const;

/** The label value for everything past the cap. Names start with a letter or digit, so no name is this. */
export const otherLabelValue = '_other';

export class LabelCap {
  private readonly admitted = new Set<string>();

  constructor(private readonly max: number = metricLimits.labelValuesMax) {}

  /** The label value for `name`: itself while there is room (or it already has one), else `_other`. */
  label(name: string): string {
    if (this.admitted.has(name)) return name;
    if (this.admitted.size >= this.max) return otherLabelValue;
    this.admitted.add(name);
    return name;
  }

  /** Forgets admitted names that are not `live` any more; returns them (their series go too). */
  retain(live: (name: string) => boolean): string[] {
    const gone: string[] = [];
    for (const name of this.admitted) {
      if (!live(name)) {
        this.admitted.delete(name);
        gone.push(name);
      }
    }
    return gone;
  }

  get size(): number {
    return this.admitted.size;
  }
}
