export * from './session.manager';
export * from './session.model';
