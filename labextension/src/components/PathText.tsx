import * as React from 'react';

/** A file path that wraps only after a "/" (never inside a name, even at a "-"), as a path should. */
export function PathText(props: { path: string }): JSX.Element {
  const parts = props.path.split('/');
  return (
    <span className="jp-mlops-path">
      {parts.map((part, i) => (
        <React.Fragment key={i}>
          <span className="jp-mlops-path-part">{i < parts.length - 1 ? `${part}/` : part}</span>
          {i < parts.length - 1 && <wbr />}
        </React.Fragment>
      ))}
    </span>
  );
}
