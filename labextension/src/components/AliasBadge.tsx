import * as React from 'react';

import { closeIcon } from '@jupyterlab/ui-components';

/** An alias a version holds (`@champion`), with a button to remove it when `onRemove` is given. */
export function AliasBadge(props: { alias: string; onRemove?: () => void }): JSX.Element {
  return (
    <span className="jp-mlops-badge" data-alias={props.alias}>
      @{props.alias}
      {props.onRemove && (
        <button
          className="jp-mlops-badge-remove"
          title={`Remove @${props.alias}`}
          aria-label={`Remove @${props.alias}`}
          onClick={event => {
            event.stopPropagation();
            props.onRemove!();
          }}
        >
          <closeIcon.react tag="span" elementSize="small" />
        </button>
      )}
    </span>
  );
}
