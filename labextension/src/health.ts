/**
 * How the panel words a model version's monitor health: the last verdict of
 * `mlops-nb monitor` (healthy, drift, degraded, insufficient data), or none yet.
 */
import { IMonitorVerdict } from './tokens';

/** The verdict in words, or "none yet" before the version's first monitor run. */
export function healthLabel(verdict: IMonitorVerdict | null | undefined): string {
  return verdict?.verdict ?? 'none yet';
}

/** A verdict in a few words: "drift: radius, texture drifted", "healthy, no drift", or "never monitored". */
export function driftSummary(verdict: IMonitorVerdict | null | undefined): string {
  if (!verdict) {
    return 'never monitored';
  }
  const drifted = verdict.drifted ?? [];
  if (drifted.length) {
    return `${verdict.verdict}: ${drifted.join(', ')} drifted`;
  }
  return verdict.verdict === 'healthy' ? 'healthy, no drift' : verdict.verdict;
}
