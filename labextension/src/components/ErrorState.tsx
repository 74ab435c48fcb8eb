import * as React from 'react';

import { ApiError } from '../api';

/** Why a section could not load, what to do, when it retries by itself, and a Retry button. */
export function ErrorState(props: {
  error: ApiError;
  onRetry: () => void;
  what?: 'registry' | 'jobs' | 'deployments' | 'approvals';
  /** When the section retries by itself (an unreachable store), if it does. */
  retryAt?: Date | null;
}): JSX.Element {
  const jobs = props.what === 'jobs';
  const deployments = props.what === 'deployments';
  const unreachable = props.error.kind === 'unreachable';
  const title =
    props.error.kind === 'missing-extension'
      ? `The ${props.what ?? 'registry'} API is not available`
      : unreachable
        ? deployments
          ? 'The Jupyter server cannot be reached'
          : `The ${jobs ? 'job' : 'model'} store cannot be reached`
        : 'Something went wrong';
  return (
    <div className="jp-mlops-error" role="alert">
      <div className="jp-mlops-error-title">{title}</div>
      <div className="jp-mlops-error-message">{props.error.message}</div>
      {unreachable && props.retryAt && (
        <div className="jp-mlops-error-retry">
          Retrying by itself (next try at {props.retryAt.toLocaleTimeString()}, then less often): the{' '}
          {jobs ? 'jobs' : 'models'} show again as soon as the store answers.
        </div>
      )}
      <button className="jp-mod-styled jp-mod-accept" onClick={props.onRetry}>
        Retry
      </button>
    </div>
  );
}
