/**
 * Which of a model's metrics matter most: the one ranking the panel uses everywhere (the
 * key metrics on a version row, the promote dialog's default metric), so the metric a
 * person sees first is the metric a promotion is judged on.
 */

// Held-out scores first: a name that starts with its split (`test_accuracy`, what a
// person logs and promotes on) before one that only mentions it (autologging's
// `<Estimator>_score_X_test`); test before validation; then names with no split; scores
// on the training data last (they flatter every model).
const TEST = 'test|holdout';
const VALIDATION = 'val|valid|validation|eval';
const SPLITS = [
  new RegExp(`^(${TEST})([^a-z]|$)`, 'i'),
  new RegExp(`^(${VALIDATION})([^a-z]|$)`, 'i'),
  new RegExp(`(^|[^a-z])(${TEST})([^a-z]|$)`, 'i'),
  new RegExp(`(^|[^a-z])(${VALIDATION})([^a-z]|$)`, 'i')
];
const TRAINING = /(^|[^a-z])(train|training)([^a-z]|$)/i;
// Within a split, a quality score before a loss or an error, before anything else.
const QUALITY = /accuracy|auc|f1|precision|recall|r2|score/i;
const LOSS = /loss|rmse|mae|mse|error/i;

function splitRank(key: string): number {
  const split = SPLITS.findIndex(re => re.test(key));
  return split >= 0 ? split : TRAINING.test(key) ? SPLITS.length + 1 : SPLITS.length;
}

function kindRank(key: string): number {
  return QUALITY.test(key) ? 0 : LOSS.test(key) ? 1 : 2;
}

/** Metric names, most telling first (held-out quality scores lead; training scores trail). */
export function rankMetricNames(keys: string[]): string[] {
  return keys.slice().sort((a, b) => splitRank(a) - splitRank(b) || kindRank(a) - kindRank(b) || a.localeCompare(b));
}

/** The few metrics worth showing in a list, in {@link rankMetricNames} order. */
export function keyMetrics(metrics: { [key: string]: number }, count = 3): [string, number][] {
  return rankMetricNames(Object.keys(metrics))
    .slice(0, count)
    .map(key => [key, metrics[key]]);
}

/** Whether a smaller value of this metric is the better one (losses and errors). */
export function lowerIsBetter(key: string): boolean {
  return LOSS.test(key) && !QUALITY.test(key);
}
