// Unit tests for the panel's model and API client (src/__tests__/*.spec.ts), in jsdom.
// JupyterLab's packages ship ES modules: ts-jest compiles them to CommonJS like our own
// sources (transpiling only; our sources are type-checked).
const esModules = ['@jupyterlab/', '@jupyter/', '@microsoft/', 'exenv-es6', 'lib0', 'nanoid', 'y-protocols', 'yjs'];

module.exports = {
  testEnvironment: '<rootDir>/jest/environment.js',
  setupFiles: ['<rootDir>/jest/shim.js'],
  testRegex: 'src/__tests__/.*\\.spec\\.tsx?$',
  moduleNameMapper: {
    '\\.(css|less|sass|scss)$': '<rootDir>/jest/style-mock.js',
    '\\.(svg|png|jpg|gif)$': '<rootDir>/jest/file-mock.js'
  },
  transform: {
    '^.+\\.tsx?$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }],
    '^.+\\.jsx?$': ['ts-jest', { tsconfig: 'tsconfig.test.json', diagnostics: false }]
  },
  transformIgnorePatterns: [`/node_modules/(?!(${esModules.join('|')}))`, '<rootDir>/jest/']
};
