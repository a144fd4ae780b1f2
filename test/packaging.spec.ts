import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join, normalize } from 'node:path';
import { promisify } from 'node:util';
import * as ts from 'typescript';

/*
 * What a user of the installed package gets, from `npm pack --dry-run` (the list of files npm would
 * publish): the license, docs that the shipped README's links reach, no source map pointing at
 * sources that are not shipped, and an install line that names the required peer dependencies.
 */

const ROOT = join(__dirname, '..');

interface PackageJson {
  license: string;
  files: string[];
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
}

describe('the published package', () => {
  let shipped: Set<string>;
  let pkg: PackageJson;

  beforeAll(async () => {
    const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json'], {
      cwd: ROOT,
      env: { ...process.env, npm_config_loglevel: 'silent' },
    });
    const [packed] = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>;
    shipped = new Set(packed.files.map((file) => file.path));
    pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as PackageJson;
  }, 60_000);

  it('ships a LICENSE file with the license package.json names', async () => {
    expect(pkg.license).toBe('MIT');
    expect(shipped.has('LICENSE')).toBe(true);
    expect(await readFile(join(ROOT, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n/);
  });

  it('every relative link of the shipped README and docs reaches a shipped file', async () => {
    const documents = [...shipped].filter((path) => path.endsWith('.md'));
    expect(documents).toContain('README.md');
    expect(documents).toContain('docs/options.md');
    const dead: string[] = [];
    for (const document of documents) {
      const text = await readFile(join(ROOT, document), 'utf8');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(target) || target.startsWith('#')) continue;
        const path = normalize(join(dirname(document), target.split('#')[0]));
        const reached = shipped.has(path) || [...shipped].some((f) => f.startsWith(`${path}/`));
        if (!reached) dead.push(`${document} → ${target}`);
      }
    }
    expect(dead).toEqual([]);
  });

  it('the build writes no source map pointing at sources the package does not ship', () => {
    const config = ts.readConfigFile(join(ROOT, 'tsconfig.build.json'), (p) => ts.sys.readFile(p));
    const { options } = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT);
    const shipsSources = pkg.files.includes('lib');
    expect({ sourceMap: !!options.sourceMap && !shipsSources }).toEqual({ sourceMap: false });
    expect({ declarationMap: !!options.declarationMap && !shipsSources }).toEqual({
      declarationMap: false,
    });
  });

  it('the install line names every required peer dependency a Nest application lacks', async () => {
    // Every Nest application has these already.
    const present = new Set(['@nestjs/common', '@nestjs/core', 'reflect-metadata', 'rxjs']);
    const needed = Object.keys(pkg.peerDependencies).filter(
      (name) => !present.has(name) && !pkg.peerDependenciesMeta[name]?.optional,
    );
    expect(needed.length).toBeGreaterThan(0);
    for (const document of ['README.md', 'docs/getting-started.md']) {
      const text = await readFile(join(ROOT, document), 'utf8');
      const line = text.split('\n').find((l) => l.startsWith('npm install nestjs-persistence'));
      expect({
        document,
        missing: needed.filter((name) => !line?.split(' ').includes(name)),
      }).toEqual({ document, missing: [] });
    }
  });
});
