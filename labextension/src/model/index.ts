/** The panel's state, one model a section. */
export * from './approvals';
export * from './deployments';
export * from './jobs';
export * from './polling';
export * from './registry';
export * from './version';
