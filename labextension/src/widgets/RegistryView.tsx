import * as React from 'react';

import { InputGroup, VDomRenderer } from '@jupyterlab/ui-components';

import { EmptyState } from '../components/EmptyState';
import { ErrorState } from '../components/ErrorState';
import { ModelItem } from '../components/ModelItem';
import { RegistryModel } from '../model';
import { IActions } from '../tokens';

/** The side panel's body: search box, models, their versions, paging. */
export class RegistryView extends VDomRenderer<RegistryModel> {
  constructor(
    model: RegistryModel,
    private readonly actions: IActions
  ) {
    super(model);
    this.addClass('jp-mlops-registry');
  }

  protected render(): JSX.Element {
    const model = this.model;
    const empty = !model.loading && !model.error && model.models.length === 0;
    // One body element: the panel sizes this section to its height (layout.ts).
    return (
      <div className="jp-mlops-section-body">
        <div className="jp-mlops-search">
          <InputGroup
            type="text"
            placeholder="Search models by name"
            rightIcon="ui-components:search"
            aria-label="Search models by name"
            defaultValue={model.query}
            onChange={event => this._onSearch((event.target as HTMLInputElement).value)}
          />
        </div>
        {model.error && (
          <ErrorState error={model.error} retryAt={model.retry.due} onRetry={() => void model.refresh()} />
        )}
        {model.loading && model.models.length === 0 && <div className="jp-mlops-loading">Loading models…</div>}
        {empty && <EmptyState query={model.query} />}
        <ul className="jp-mlops-models" aria-busy={model.loading}>
          {model.models.map(row => (
            <ModelItem key={row.name} row={row} model={model} actions={this.actions} />
          ))}
        </ul>
        {(model.hasPrevious || model.hasNext) && (
          <div className="jp-mlops-pager">
            <button className="jp-mod-styled" disabled={!model.hasPrevious} onClick={() => void model.previousPage()}>
              ‹ Previous
            </button>
            <span>page {model.pageIndex + 1}</span>
            <button className="jp-mod-styled" disabled={!model.hasNext} onClick={() => void model.nextPage()}>
              Next ›
            </button>
          </div>
        )}
        {model.refreshedAt && <div className="jp-mlops-footer">updated {model.refreshedAt.toLocaleTimeString()}</div>}
      </div>
    );
  }

  private _onSearch(value: string): void {
    window.clearTimeout(this._debounce);
    this._debounce = window.setTimeout(() => void this.model.search(value), 250);
  }

  private _debounce = 0;
}
