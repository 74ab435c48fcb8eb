import * as React from 'react';

/** How a model gets here: the cells that train and register one. */
const REGISTER_EXAMPLE = [
  '%load_ext mlops_nb',
  '%mlops track',
  '# ... fit `model` ...',
  '%mlops register model --name my-model --alias challenger'
].join('\n');

/** The registry with no model to show: none matches the search, or none is registered yet. */
export function EmptyState(props: { query: string }): JSX.Element {
  if (props.query) {
    return <div className="jp-mlops-empty">No model name contains “{props.query}”.</div>;
  }
  return (
    <div className="jp-mlops-empty">
      <p>No registered models yet.</p>
      <p>Train a model in a notebook and register it from a cell:</p>
      <pre>{REGISTER_EXAMPLE}</pre>
      <p>It will appear here with its metrics and the notebook that trained it.</p>
    </div>
  );
}
