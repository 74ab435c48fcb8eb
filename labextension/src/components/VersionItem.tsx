import * as React from 'react';

import { ToolbarButtonComponent } from '@jupyterlab/ui-components';

import { formatNumber, formatTime } from '../format';
import { keyMetrics, rankMetricNames } from '../metrics';
import { IActions, IVersionRow } from '../tokens';
import { AliasBadge } from './AliasBadge';

/** A version in an expanded model: its aliases, key metrics and actions. */
export function VersionItem(props: { row: IVersionRow; aliases: string[]; actions: IActions }): JSX.Element {
  const { row, aliases, actions } = props;
  const metrics = keyMetrics(row.metrics);
  return (
    <li className="jp-mlops-version" data-version={row.version}>
      <div className="jp-mlops-version-head">
        <button
          className="jp-mlops-link jp-mlops-version-label"
          title={`Details of ${row.name} v${row.version}`}
          onClick={() => actions.openDetail(row.name, row.version)}
        >
          v{row.version}
        </button>
        {aliases.map(alias => (
          <AliasBadge key={alias} alias={alias} onRemove={() => actions.removeAlias(row.name, alias, row.version)} />
        ))}
        <span className="jp-mlops-time" title="created">
          {formatTime(row.created)}
        </span>
      </div>
      {metrics.length > 0 && (
        <div className="jp-mlops-metrics">
          {metrics.map(([key, value]) => (
            <span key={key} className="jp-mlops-metric" title={`${key} = ${value}`}>
              {key} <b>{formatNumber(value)}</b>
            </span>
          ))}
        </div>
      )}
      <div className="jp-mlops-version-actions" role="group" aria-label={`Actions on ${row.name} v${row.version}`}>
        <ToolbarButtonComponent
          label="Details"
          tooltip="Details and lineage"
          onClick={() => actions.openDetail(row.name, row.version)}
        />
        <ToolbarButtonComponent
          label="Notebook"
          tooltip="Open source notebook"
          onClick={() => actions.openNotebook(row.name, row.version)}
        />
        <ToolbarButtonComponent
          label="Copy code"
          tooltip="Copy load snippet"
          onClick={() => actions.copySnippet(row.name, row.version, aliases)}
        />
        <ToolbarButtonComponent
          label="Set alias…"
          tooltip="Set or move an alias"
          onClick={() => actions.setAlias(row.name, row.version)}
        />
        <ToolbarButtonComponent
          label="Promote…"
          tooltip="Promote if better"
          onClick={() => actions.promote(row.name, row.version, rankMetricNames(Object.keys(row.metrics)))}
        />
      </div>
    </li>
  );
}
