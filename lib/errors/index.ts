export * from './persistence-error-code.enum';
export * from './persistence.error';
