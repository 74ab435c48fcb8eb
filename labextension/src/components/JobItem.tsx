import * as React from 'react';

import { formatDuration, formatTime, originLabel } from '../format';
import { IJobActions, IJobRow } from '../tokens';
import { PathText } from './PathText';
import { StatusBadge } from './StatusBadge';

/** A job run: status, notebook (a link to the executed copy), start, origin, duration, error. */
export function JobItem(props: { job: IJobRow; actions: IJobActions }): JSX.Element {
  const { job, actions } = props;
  const label = job.notebook || job.name || job.schedule || 'job';
  // A scheduled pipeline's row is its pipeline run: its steps are the jobs to open.
  const canOpen = !!job.run_id && !/\.ya?ml$/i.test(job.notebook || '');
  return (
    <li className="jp-mlops-job" data-run-id={job.run_id ?? ''} data-status={job.status}>
      <div className="jp-mlops-job-head">
        <StatusBadge status={job.status} title={job.state ? `scheduler: ${job.state}` : undefined} />
        {canOpen ? (
          <button
            className="jp-mlops-link jp-mlops-job-name"
            title={`Open the executed notebook of run ${job.run_id}`}
            onClick={() => actions.openJobNotebook(job)}
          >
            <PathText path={label} />
          </button>
        ) : (
          <span className="jp-mlops-job-name">
            <PathText path={label} />
          </span>
        )}
        <span className="jp-mlops-time" title={job.start ?? ''}>
          {formatTime(job.start)}
        </span>
      </div>
      <div className="jp-mlops-job-meta">
        <span className="jp-mlops-origin">{originLabel(job)}</span>
        {job.duration_s !== null && <span>{formatDuration(job.duration_s)}</span>}
      </div>
      {job.error && (
        <div className="jp-mlops-job-error" title={job.error}>
          {job.error}
        </div>
      )}
    </li>
  );
}
