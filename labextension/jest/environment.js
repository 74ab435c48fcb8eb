// jsdom, plus the Fetch API's classes from Node (jsdom has none): Jupyter's
// ServerConnection builds a `Request` and reads a `Response`; the tests replace only
// `fetch` itself, the HTTP boundary.
const { TestEnvironment } = require('jest-environment-jsdom');

class JsdomWithFetch extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of ['Request', 'Response', 'Headers', 'ReadableStream', 'TextEncoder', 'TextDecoder']) {
      this.global[name] = globalThis[name];
    }
  }
}

module.exports = JsdomWithFetch;
