/**
 * A stand-in for the Jupyter server at the one boundary the panel crosses: `fetch`.
 * Everything above it (ServerConnection, the API client, the models, Lumino's Poll)
 * runs as in the browser.
 */

/** One answer: a status and a JSON body (or raw text), or a network failure. */
export type Answer = { status?: number; json?: unknown; text?: string; statusText?: string } | 'network-down';

/** Picks the answer to a request from its path under /mlops-nb/api/ and its query. */
export type Route = (path: string, query: URLSearchParams, request: Request) => Answer;

export interface IFakeServer {
  /** Every request made, as `METHOD path?query` without ServerConnection's cache buster. */
  readonly calls: string[];
  /** Bodies of the requests that had one, in order. */
  readonly bodies: unknown[];
  /** Change how the server answers from now on. */
  route: Route;
}

/** Replace `fetch` with a server answering through `route`; returns what it records. */
export function fakeServer(route: Route): IFakeServer {
  const server: IFakeServer = { calls: [], bodies: [], route };
  globalThis.fetch = jest.fn(async (input: RequestInfo | URL) => {
    const request = input as Request;
    const url = new URL(request.url);
    const query = new URLSearchParams(url.search);
    // ServerConnection appends a bare timestamp (`&1700000000000`) to bypass caches.
    for (const key of [...query.keys()]) {
      if (/^\d+$/.test(key) && query.get(key) === '') {
        query.delete(key);
      }
    }
    const path = url.pathname.replace(/^.*\/mlops-nb\/api\//, '');
    const shown = query.toString();
    server.calls.push(`${request.method} ${path}${shown ? `?${shown}` : ''}`);
    const body = await request.text();
    if (body) {
      server.bodies.push(JSON.parse(body));
    }
    const answer = server.route(path, query, request);
    if (answer === 'network-down') {
      throw new TypeError('Failed to fetch');
    }
    const text = answer.text ?? (answer.json === undefined ? '' : JSON.stringify(answer.json));
    return new Response(text, { status: answer.status ?? 200, statusText: answer.statusText });
  }) as typeof fetch;
  return server;
}

/** The server extension's error body, as its base handler writes it. */
export function apiError(status: number, error: string): Answer {
  return { status, json: { error, status } };
}

/** Paths asked for, in order, without their query. */
export function paths(server: IFakeServer): string[] {
  return server.calls.map(call => call.split('?')[0]);
}
