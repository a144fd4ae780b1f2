import { ChildApp } from './fixtures/child-process';
import { makeTempDir, removeDir } from './fixtures/temp-dir';

/*
 * Real processes running the sample application (sample/000-assistant-app): the state created by one
 * process is back in the next one after SIGTERM or SIGINT, because the module saves on shutdown.
 */
const MAIN = 'sample/000-assistant-app/src/main.ts';

const CREATED = {
  sessions: ['ada', 'grace'].map((u) => ({ id: `session-${u}`, status: 'active', user: u })),
  conversations: ['ada', 'grace'].map((u) => ({
    id: `conversation-${u}`,
    messages: ['user: Where is bootstrap()?', 'assistant: In src/main.ts.', 'user: Thanks!'],
  })),
  focus: ['ada', 'grace'].map((u) => ({ id: `focus-${u}`, targets: ['src/main.ts', 'bootstrap'] })),
};

describe('shutdown on signals (real child processes)', () => {
  let dir: string;
  const children: ChildApp[] = [];
  const run = (action?: string): ChildApp => {
    const child = new ChildApp(MAIN, { PERSISTENCE_PATH: dir, SAMPLE_ACTION: action ?? '' });
    children.push(child);
    return child;
  };
  const stateOf = async (child: ChildApp): Promise<unknown> =>
    JSON.parse((await child.waitFor(/^STATE /)).slice('STATE '.length));

  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    for (const child of children.splice(0)) {
      child.kill('SIGKILL');
      await child.exited;
    }
    await removeDir(dir);
  });

  it.each(['SIGTERM', 'SIGINT'] as const)(
    'state created before %s is there at the next start',
    async (signal) => {
      const first = run('create');
      expect(await stateOf(first)).toEqual({ sessions: [], conversations: [], focus: [] });
      await first.waitFor('READY');
      first.kill(signal);
      const exit = await first.exited;
      expect(exit.signal ?? exit.code).toBe(exit.signal ? signal : 0);
      expect(first.lines.join('\n')).toMatch(/Saved 6 items \(6 changed/);

      const second = run();
      expect(await stateOf(second)).toEqual(CREATED);
    },
    60_000,
  );

  it('state of a process killed with SIGKILL before any save is not there (the save is the shutdown path)', async () => {
    const first = run('create');
    await first.waitFor('READY');
    first.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    const second = run();
    expect(await stateOf(second)).toEqual({ sessions: [], conversations: [], focus: [] });
  }, 60_000);
});
