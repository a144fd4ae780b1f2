/** Exit codes of the CLI. */
export enum ExitCode {
  /** The command did what it was asked, and found nothing wrong. */
  Ok = 0,
  /** Problems were found (verify, export), or the operation failed or was refused. */
  Failed = 1,
  /** The command line is wrong: unknown command or option, missing argument, bad value. */
  Usage = 2,
}

/** An expected failure: its message is printed as it is (no stack), then the CLI exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode.Failed | ExitCode.Usage = ExitCode.Failed,
  ) {
    super(message);
  }
}
