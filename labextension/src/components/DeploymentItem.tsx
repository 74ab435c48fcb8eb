import * as React from 'react';

import { ToolbarButtonComponent, stopIcon } from '@jupyterlab/ui-components';

import { formatLatency, formatRate, formatTime, relativeTime } from '../format';
import { DeploymentsModel } from '../model';
import { IDeployment, IDeploymentActions } from '../tokens';
import { HealthBadge, verdictWhen } from './HealthBadge';

/** A server's state in a word: serving, loading, degraded, or not answering. */
export function deploymentState(d: IDeployment): string {
  if (!d.reachable) {
    return 'not answering';
  }
  return d.status === 'ok' ? 'serving' : (d.status ?? 'unknown');
}

/** The last swap in words ("v1 → v2 5 minutes ago, loaded in 1.2 s"), or since when it serves unchanged. */
function swapText(d: IDeployment): string {
  const swap = d.last_swap;
  if (!swap) {
    return d.started ? `no swap since it started ${relativeTime(d.started)}` : 'no swap since it started';
  }
  const load = typeof swap.load_seconds === 'number' ? `, loaded in ${Number(swap.load_seconds.toPrecision(2))} s` : '';
  return `last swap: v${swap.from ?? '∅'} → v${swap.to} ${relativeTime(swap.at)}${load}`;
}

/**
 * The served version's monitor health: the verdict as a badge, the features that
 * drifted, when, and its report (a page of its own, opened in a new browser tab).
 */
function HealthLine(props: { deployment: IDeployment }): JSX.Element | null {
  const { health, health_error: problem, name, version, alias } = props.deployment;
  if (!name || !version) {
    return null; // a run or a folder: not a registered version, never monitored by name
  }
  const drifted = health?.drifted ?? [];
  return (
    <div className="jp-mlops-deployment-health" data-health={health?.verdict ?? 'none yet'}>
      <span className="jp-mlops-deployment-health-label">health</span>
      <HealthBadge verdict={health} />
      {drifted.length > 0 && (
        <span className="jp-mlops-drifted" title="features whose distribution moved away from the training data">
          drifted: {drifted.join(', ')}
        </span>
      )}
      {health && (
        <span className="jp-mlops-muted" title={formatTime(health.when ?? null)}>
          {verdictWhen(health)}
        </span>
      )}
      {health?.report_url && (
        <a
          className="jp-mlops-report-link"
          href={health.report_url}
          target="_blank"
          rel="noopener noreferrer"
          title={`The monitor report of ${name} v${version} (run ${health.run_id}), in a new browser tab`}
        >
          report
        </a>
      )}
      {!health && problem && <span className="jp-mlops-deployment-problem">{problem}</span>}
      {!health && !problem && (
        <code className="jp-mlops-muted" title="how to check it">
          mlops-nb monitor models:/{alias ? `${name}@${alias}` : `${name}/${version}`}
        </code>
      )}
    </div>
  );
}

/**
 * A model server: the model, the alias it follows and the version it serves (a link to
 * the version's details), where it answers, its request rate, latency and errors, its
 * last swap, the served version's monitor health, and Stop.
 */
export function DeploymentItem(props: {
  deployment: IDeployment;
  model: DeploymentsModel;
  actions: IDeploymentActions;
}): JSX.Element {
  const { deployment: d, model, actions } = props;
  const stopping = model.stopping(d.id);
  const name = d.name || d.model;
  const state = deploymentState(d);
  return (
    <li
      className="jp-mlops-deployment"
      data-deployment={d.id}
      data-reachable={String(d.reachable)}
      data-version={d.version ?? ''}
    >
      <div className="jp-mlops-deployment-head">
        <span className="jp-mlops-deployment-model" title={d.model}>
          {name}
        </span>
        {d.alias && (
          <span className="jp-mlops-badge jp-mlops-badge-small" data-alias={d.alias} title={`follows @${d.alias}`}>
            @{d.alias}
          </span>
        )}
        {d.version &&
          (d.name ? (
            <button
              className="jp-mlops-link jp-mlops-deployment-version"
              title={`Details of ${d.name} v${d.version}`}
              onClick={() => actions.openVersion(d.name!, d.version!)}
            >
              v{d.version}
            </button>
          ) : (
            <span className="jp-mlops-deployment-version">v{d.version}</span>
          ))}
      </div>
      <div className="jp-mlops-deployment-url">
        <span className="jp-mlops-status" data-status={state.toUpperCase()} title={d.error ?? `/health: ${d.status}`}>
          {state}
        </span>
        <code>{d.url}</code>
      </div>
      {d.reachable ? (
        <>
          <div className="jp-mlops-metrics jp-mlops-deployment-numbers">
            <span className="jp-mlops-metric" data-number="rate" title="requests a second, over the last 60 s">
              rate <b>{formatRate(d.requests_per_second)}</b>
            </span>
            <span className="jp-mlops-metric" data-number="p50" title="median latency, over the last 60 s">
              p50 <b>{formatLatency(d.p50_ms)}</b>
            </span>
            <span className="jp-mlops-metric" data-number="p99" title="99th percentile latency, over the last 60 s">
              p99 <b>{formatLatency(d.p99_ms)}</b>
            </span>
            <span className="jp-mlops-metric" data-number="errors" title="error answers since it started">
              errors <b>{d.errors ?? '—'}</b> of {d.requests ?? '—'}
            </span>
          </div>
          <div className="jp-mlops-deployment-swap" title={d.last_swap ? formatTime(d.last_swap.at) : ''}>
            {swapText(d)}
          </div>
        </>
      ) : (
        <div className="jp-mlops-deployment-problem">{d.error ?? 'it does not answer'}</div>
      )}
      <HealthLine deployment={d} />
      {d.last_error && (
        <div className="jp-mlops-job-error" title={d.last_error.error}>
          v{d.last_error.version} did not load: {d.last_error.error}
        </div>
      )}
      <div className="jp-mlops-deployment-actions">
        <ToolbarButtonComponent
          icon={stopIcon}
          label={stopping ? 'Stopping…' : 'Stop'}
          tooltip={`Stop the server at ${d.url}`}
          enabled={!stopping}
          onClick={() => actions.stop(d)}
        />
      </div>
    </li>
  );
}
