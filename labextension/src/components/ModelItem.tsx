import * as React from 'react';

import { caretDownIcon, caretRightIcon } from '@jupyterlab/ui-components';

import { RegistryModel } from '../model';
import { IActions, IModelRow } from '../tokens';
import { ErrorState } from './ErrorState';
import { VersionItem } from './VersionItem';

/** A registered model: its head (latest version, aliases) and, once expanded, its versions page by page. */
export function ModelItem(props: { row: IModelRow; model: RegistryModel; actions: IActions }): JSX.Element {
  const { row, model, actions } = props;
  const name = row.name;
  const open = model.expanded(name);
  const Caret = open ? caretDownIcon : caretRightIcon;
  return (
    <li className="jp-mlops-model" data-model={name}>
      <button
        className="jp-mlops-model-head"
        aria-expanded={!!open}
        title={row.description || name}
        onClick={() => void model.toggle(name)}
      >
        <Caret.react tag="span" elementSize="small" />
        <span className="jp-mlops-model-name">{name}</span>
        {row.latest_version && <span className="jp-mlops-latest">v{row.latest_version}</span>}
        {Object.entries(row.aliases)
          .sort()
          .map(([alias, version]) => (
            <span key={alias} className="jp-mlops-badge jp-mlops-badge-small" title={`@${alias} → v${version}`}>
              @{alias}:v{version}
            </span>
          ))}
      </button>
      {open && (
        <div className="jp-mlops-versions-box">
          {open.error && <ErrorState error={open.error} onRetry={() => void model.refresh()} />}
          <ul className="jp-mlops-versions">
            {open.versions.map(v => (
              <VersionItem
                key={v.version}
                row={v}
                aliases={v.aliases ?? model.aliasesOf(name, v.version)}
                actions={actions}
              />
            ))}
          </ul>
          {open.loading && <div className="jp-mlops-loading">Loading versions…</div>}
          {!open.loading && open.nextPageToken && (
            <button className="jp-mod-styled jp-mlops-more" onClick={() => void model.moreVersions(name)}>
              More versions
            </button>
          )}
        </div>
      )}
    </li>
  );
}
