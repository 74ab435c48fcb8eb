import * as React from 'react';

/** A job's status as a coloured badge (`data-status` picks the colour). */
export function StatusBadge(props: { status: string; title?: string }): JSX.Element {
  return (
    <span className="jp-mlops-status" data-status={props.status.toUpperCase()} title={props.title}>
      {props.status.toLowerCase()}
    </span>
  );
}
