import * as React from 'react';

import { formatNumber, formatTime, relativeTime } from '../format';
import { driftSummary } from '../health';
import { ApprovalsModel, approvalKey, lineageParts, metricComparisons } from '../model';
import { IApprovalActions, IMonitorVerdict, IPendingApproval } from '../tokens';
import { AliasBadge } from './AliasBadge';
import { HealthBadge, verdictWhen } from './HealthBadge';

/** "+0.05" / "−0.5": a change with its sign, to 3 figures; "—" when unknown. */
export function signedChange(delta: number | null): string {
  if (delta === null || !isFinite(delta)) {
    return '—';
  }
  const size = String(Number(Math.abs(delta).toPrecision(3)));
  return delta > 0 ? `+${size}` : delta < 0 ? `−${size}` : '0';
}

/** What the holder's verdict found, in a few words beside its badge: the drifted features and when. */
function driftDetail(drift: IMonitorVerdict | null): string {
  if (!drift) {
    return 'never monitored';
  }
  const drifted = drift.drifted ?? [];
  const when = verdictWhen(drift);
  return [drifted.length ? `${drifted.join(', ')} drifted` : '', when].filter(Boolean).join(', ');
}

/** The evidence's metrics: the candidate's value beside the current holder's, and the change. */
function MetricsTable(props: { approval: IPendingApproval }): JSX.Element | null {
  const { approval: a } = props;
  const rows = metricComparisons(a);
  if (!rows.length) {
    return null;
  }
  return (
    <table className="jp-mlops-approval-metrics" title={a.evidence?.comparison || a.why}>
      <thead>
        <tr>
          <th>metric</th>
          <th>v{a.version}</th>
          <th>{a.current_version ? `v${a.current_version}` : 'now'}</th>
          <th>change</th>
        </tr>
      </thead>
      <tbody>
        {rows.map(r => (
          <tr key={r.metric} data-metric={r.metric}>
            <td>{r.metric}</td>
            <td>{formatNumber(r.candidate)}</td>
            <td>{formatNumber(r.current)}</td>
            <td>{signedChange(r.delta)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/**
 * A promotion waiting for approval: the model, the candidate version and the protected
 * alias it would take from its current holder, who asked and when, the evidence (the
 * metric comparison, with the guard's words as its tooltip; the current holder's last
 * monitor verdict; the candidate's lineage), a reason and Approve / Reject (Reject waits
 * for a reason).
 */
export function ApprovalItem(props: {
  approval: IPendingApproval;
  model: ApprovalsModel;
  actions: IApprovalActions;
}): JSX.Element {
  const { approval: a, model, actions } = props;
  const key = approvalKey(a);
  const busy = model.deciding(key);
  const drift = a.evidence?.drift ?? null;
  const lineage = lineageParts(a.evidence?.lineage);
  return (
    <li className="jp-mlops-approval" data-approval={key} data-alias={a.alias} data-version={a.version}>
      <div className="jp-mlops-approval-head">
        <span className="jp-mlops-approval-model">{a.name}</span>
        <button
          className="jp-mlops-link jp-mlops-approval-version"
          title={`Details of ${a.name} v${a.version}`}
          onClick={() => actions.openVersion(a.name, a.version)}
        >
          v{a.version}
        </button>
        <span aria-hidden="true">→</span>
        <AliasBadge alias={a.alias} />
        <span className="jp-mlops-approval-holder">
          {a.current_version ? `now on v${a.current_version}` : 'not set yet'}
        </span>
      </div>
      <div className="jp-mlops-approval-meta" title={formatTime(a.requested_at)}>
        requested by <b>{a.requested_by}</b> {relativeTime(a.requested_at)}
      </div>
      {metricComparisons(a).length ? (
        <MetricsTable approval={a} />
      ) : (
        <div className="jp-mlops-approval-why">{a.evidence?.comparison || a.why}</div>
      )}
      {a.current_version && (
        <div className="jp-mlops-approval-drift" title={drift?.reason ?? driftSummary(drift)}>
          <span>v{a.current_version} in service:</span>
          <HealthBadge verdict={drift} />
          <span>{driftDetail(drift)}</span>
        </div>
      )}
      {lineage.length > 0 && (
        <div className="jp-mlops-approval-lineage">
          {lineage.map(([label, text]) => (
            <span key={label} title={label === 'notebook' ? text : undefined}>
              {label} <code>{text}</code>
            </span>
          ))}
        </div>
      )}
      <input
        className="jp-mod-styled jp-mlops-approval-reason"
        type="text"
        maxLength={1000}
        placeholder="Reason (needed to reject)"
        aria-label={`Reason for the decision on ${a.name} v${a.version} → @${a.alias}, kept in the audit trail`}
        title="Kept in the audit trail with your name; a rejection needs one"
        value={model.reason(key)}
        disabled={busy}
        onChange={event => model.setReason(key, event.target.value)}
      />
      <div className="jp-mlops-approval-actions">
        <button
          className="jp-mod-styled jp-mod-accept"
          disabled={busy}
          title={`Move @${a.alias} of ${a.name} to v${a.version}`}
          onClick={() => actions.decide(a, 'approve')}
        >
          Approve
        </button>
        <button
          className="jp-mod-styled jp-mod-warn"
          disabled={!model.canReject(key)}
          title={model.reason(key).trim() ? `@${a.alias} stays where it is` : 'Type a reason to reject'}
          onClick={() => actions.decide(a, 'reject')}
        >
          Reject
        </button>
      </div>
    </li>
  );
}
