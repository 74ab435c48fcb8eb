import * as React from 'react';

import { formatTime, relativeTime } from '../format';
import { healthLabel } from '../health';
import { IMonitorVerdict } from '../tokens';

/**
 * A version's monitor health as a badge: healthy, drift, degraded, insufficient data, or
 * "none yet" (`data-health` picks the colour; the word says it). The title holds the
 * verdict's reason and when it was reached.
 */
export function HealthBadge(props: { verdict: IMonitorVerdict | null | undefined }): JSX.Element {
  const { verdict } = props;
  const label = healthLabel(verdict);
  const title = verdict
    ? `last monitor run ${formatTime(verdict.when ?? null)}${verdict.reason ? `: ${verdict.reason}` : ''}`
    : 'never monitored: run mlops-nb monitor models:/NAME@ALIAS';
  return (
    <span className="jp-mlops-health" data-health={label} title={title}>
      {label}
    </span>
  );
}

/** When a verdict was reached, in words ("5 minutes ago"); empty when unknown. */
export function verdictWhen(verdict: IMonitorVerdict | null | undefined): string {
  return verdict?.when ? relativeTime(verdict.when) : '';
}
