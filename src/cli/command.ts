// The shape of a subcommand: its name, a one-line summary for the command list, the
// full --help text, and run(argv) that resolves to the process exit code.
export interface Command {
  name: string;
  summary: string;
  help: string;
  /** The command stops gracefully on SIGINT/SIGTERM itself (the worker); the others end at once (src/cli/main.ts). */
  handlesSignals?: boolean;
  run(argv: string[]): Promise<number>;
}
