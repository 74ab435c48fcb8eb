import * as React from 'react';

/** Rows of a version's detail as a two-column table, or `empty` when there is none. */
export function KeyValueTable(props: { rows: [string, React.ReactNode][]; empty: string }): JSX.Element {
  if (!props.rows.length) {
    return <p className="jp-mlops-muted">{props.empty}</p>;
  }
  return (
    <table className="jp-mlops-table">
      <tbody>
        {props.rows.map(([key, value]) => (
          <tr key={key}>
            <th>{key}</th>
            <td>{value}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
