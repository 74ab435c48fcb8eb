/**
 * The Approvals section's state: the promotions of protected aliases waiting for a
 * person, the reason typed for each, which one is being decided, and what went wrong.
 */
import { VDomModel } from '@jupyterlab/ui-components';
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, decideApproval, fetchApprovals } from '../api';
import { IApprovalDecision, IPendingApproval, IRefreshable } from '../tokens';

/** A pending approval's key: `NAME/VERSION/ALIAS` (one request per version and alias). */
export function approvalKey(a: Pick<IPendingApproval, 'name' | 'version' | 'alias'>): string {
  return `${a.name}/${a.version}/${a.alias}`;
}

/** One metric of the evidence: the candidate's value, the current holder's, and the change. */
export interface IMetricComparison {
  metric: string;
  candidate: number | null;
  current: number | null;
  /** candidate − current; null when either is missing. */
  delta: number | null;
}

/** The evidence's metrics in a stable order (the metric the guard judged on first, then by name). */
export function metricComparisons(approval: IPendingApproval): IMetricComparison[] {
  const metrics = approval.evidence?.metrics ?? {};
  const judged = Object.keys(metrics).find(m => approval.evidence?.comparison?.includes(m));
  return Object.keys(metrics)
    .sort((a, b) => Number(b === judged) - Number(a === judged) || (a < b ? -1 : a > b ? 1 : 0))
    .map(metric => {
      const candidate = finite(metrics[metric]?.candidate);
      const current = finite(metrics[metric]?.current);
      const delta = candidate !== null && current !== null ? candidate - current : null;
      return { metric, candidate, current, delta };
    });
}

function finite(value: number | null | undefined): number | null {
  return typeof value === 'number' && isFinite(value) ? value : null;
}

/**
 * The Approvals section: pending promotions, read with the registry (its refresh button,
 * its auto-refresh and its first show). A decision posts the reason typed for that
 * request, then re-reads the list and tells `decided` (the plugin refreshes the
 * registry, where the alias moved).
 */
export class ApprovalsModel extends VDomModel implements IRefreshable {
  get approvals(): IPendingApproval[] {
    return this._approvals;
  }
  /** Nothing has been loaded yet. */
  get loading(): boolean {
    return this._loading;
  }
  get error(): ApiError | null {
    return this._error;
  }
  get refreshedAt(): Date | null {
    return this._refreshedAt;
  }
  /** Emitted after every decision the server accepted. */
  get decided(): ISignal<this, IApprovalDecision> {
    return this._decided;
  }

  /** The reason typed for the request `key` (empty when none). */
  reason(key: string): string {
    return this._reasons.get(key) ?? '';
  }

  setReason(key: string, text: string): void {
    this._reasons.set(key, text);
    this.stateChanged.emit();
  }

  /** Whether the request `key` can be rejected: a rejection needs a reason. */
  canReject(key: string): boolean {
    return this.reason(key).trim() !== '' && !this.deciding(key);
  }

  /** Whether a decision on the request `key` is on its way (its buttons wait). */
  deciding(key: string): boolean {
    return this._deciding.has(key);
  }

  /** The section has no timer of its own: the registry's refresh reads it only while the panel is shown. */
  setVisible(): void {
    // nothing to start or stop
  }

  /** Re-read the pending approvals; `quiet` keeps what is shown until the answer arrives and throws a failure. */
  async refresh(options: { quiet?: boolean } = {}): Promise<void> {
    const ticket = ++this._ticket;
    if (!options.quiet && !this._loaded) {
      this._loading = true;
      this.stateChanged.emit();
    }
    try {
      const answer = await fetchApprovals();
      if (ticket !== this._ticket) {
        return; // a newer refresh answered first
      }
      this._approvals = sortApprovals(answer.approvals);
      this._error = null;
      this._refreshedAt = new Date();
      // Reasons typed for requests that are gone (decided elsewhere) are dropped.
      const keys = new Set(this._approvals.map(approvalKey));
      [...this._reasons.keys()].filter(k => !keys.has(k)).forEach(k => this._reasons.delete(k));
    } catch (error) {
      if (ticket !== this._ticket) {
        return;
      }
      this._error = ApiError.from(error);
    }
    this._loaded = true;
    this._loading = false;
    this.stateChanged.emit();
    if (this._error && options.quiet) {
      throw this._error;
    }
  }

  /**
   * Approve or reject `approval` with the reason typed for it. A rejection without a
   * reason is refused here, as the server would. Resolves with what the server did;
   * the list is re-read either way, so a request decided elsewhere disappears.
   */
  async decide(approval: IPendingApproval, decision: 'approve' | 'reject'): Promise<IApprovalDecision> {
    const key = approvalKey(approval);
    const reason = this.reason(key).trim();
    if (decision === 'reject' && !reason) {
      throw new ApiError(
        `Give a reason to reject ${approval.name} v${approval.version} for @${approval.alias}: it goes in the audit trail.`,
        400,
        'bad-input'
      );
    }
    this._deciding.add(key);
    this.stateChanged.emit();
    try {
      const done = await decideApproval(approval.name, approval.version, approval.alias, decision, reason);
      this._reasons.delete(key);
      this._decided.emit(done);
      return done;
    } finally {
      this._deciding.delete(key);
      await this.refresh({ quiet: true }).catch(() => undefined);
    }
  }

  private _approvals: IPendingApproval[] = [];
  private _loading = false;
  private _loaded = false;
  private _error: ApiError | null = null;
  private _refreshedAt: Date | null = null;
  private _reasons = new Map<string, string>();
  private _deciding = new Set<string>();
  private _decided = new Signal<this, IApprovalDecision>(this);
  private _ticket = 0;
}

/** Oldest request first (the one waiting longest), then by model, alias and version. */
export function sortApprovals(approvals: IPendingApproval[]): IPendingApproval[] {
  const key = (a: IPendingApproval) => [a.requested_at ?? '', a.name, a.alias, a.version.padStart(9, '0')];
  return approvals.slice().sort((a, b) => {
    const [ka, kb] = [key(a), key(b)];
    const i = ka.findIndex((part, n) => part !== kb[n]);
    return i < 0 ? 0 : ka[i] < kb[i] ? -1 : 1;
  });
}

/** The parts of a candidate's lineage worth a glance, as [label, text]: notebook, branch, commit and run (short ids). */
export function lineageParts(lineage: { [key: string]: unknown } | null | undefined): [string, string][] {
  const plain: { [key: string]: string } = {};
  for (const [key, value] of Object.entries(lineage ?? {})) {
    if (typeof value === 'string' && value) {
      plain[key.replace(/^mlops_nb\./, '')] = value; // the registry's tag names, or the detail's short keys
    }
  }
  const parts: [string, string][] = [];
  if (plain['notebook']) {
    parts.push(['notebook', plain['notebook']]);
  }
  if (plain['git.branch']) {
    parts.push(['branch', plain['git.branch']]);
  }
  if (plain['git.commit']) {
    const dirty = plain['git.dirty'] === 'true' ? ' (uncommitted changes)' : '';
    parts.push(['commit', plain['git.commit'].slice(0, 8) + dirty]);
  }
  if (plain['run_id']) {
    parts.push(['run', plain['run_id'].slice(0, 8)]);
  }
  return parts;
}
