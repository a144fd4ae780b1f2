import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import * as ts from 'typescript';

/*
 * Every ```ts block of README.md and docs/*.md compiles against the library as it is: one
 * TypeScript Program over all blocks (in memory, never written), `nestjs-persistence` mapped to
 * lib/index.ts. A block that imports nothing is a fragment: it gets imports of the names it uses
 * from the packages below, and the names examples take for granted (`store`, `CartService`,
 * `AppModule`, …) are declared globally in CONTEXT. A block preceded by `<!-- no-typecheck -->` is
 * skipped (use it sparingly, for deliberate fragments).
 */
const ROOT = join(__dirname, '..');
const NO_TYPECHECK = '<!-- no-typecheck -->';
const BLOCKS_DIR = join(ROOT, '.docs-blocks'); // virtual: inside the repository so packages resolve

/** Where a fragment's names come from, in order of preference. */
const PACKAGES = [
  'nestjs-persistence',
  'nestjs-persistence/health',
  'nestjs-persistence/postgres',
  'nestjs-persistence/redis',
  'nestjs-persistence/testing',
  'nestjs-persistence/s3',
  '@nestjs/common',
  '@nestjs/core',
  '@nestjs/config',
  '@nestjs/event-emitter',
  '@nestjs/schedule',
  '@nestjs/terminus',
  'rxjs',
];

/** Names the examples use without defining them. */
const CONTEXT = `
declare interface Cart { id: string; items: string[] }
declare class CartService {
  entries(): ReadonlyMap<string, Cart>;
  replaceAll(items: ReadonlyMap<string, Cart>): void;
}
declare function parseCart(value: unknown): Cart;
declare class CartAdapter {
  snapshot(): ReadonlyMap<string, Cart>;
  restore(items: ReadonlyMap<string, Cart>): void;
}
declare class CartStateModule {}
declare class AppModule {}
declare const store: import('nestjs-persistence').PersistenceStore;
declare const alerts: { send(code: string, operation: string): void };
declare function it(name: string, test: () => Promise<void>): void;
declare function expect(value: unknown): { toHaveLength(length: number): void; toEqual(value: unknown): void };
`;

interface Block {
  /** The Markdown file, relative to the repository. */
  doc: string;
  /** 1-based line of the block's first code line in the Markdown file. */
  line: number;
  code: string;
}

function markdownFiles(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => join(ROOT, 'docs', name));
  return [join(ROOT, 'README.md'), ...docs];
}

function extractBlocks(file: string): { blocks: Block[]; skipped: number } {
  const lines = readFileSync(file, 'utf8').split('\n');
  const blocks: Block[] = [];
  let skipped = 0;
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(ts|typescript)\s*$/.test(lines[i])) continue;
    const end = lines.findIndex((line, j) => j > i && /^```\s*$/.test(line));
    if (end < 0) throw new Error(`${relative(ROOT, file)}:${i + 1}: unclosed code block`);
    let before = i - 1;
    while (before >= 0 && lines[before].trim() === '') before--;
    if (before >= 0 && lines[before].trim() === NO_TYPECHECK) skipped++;
    else
      blocks.push({
        doc: relative(ROOT, file),
        line: i + 2,
        code: lines.slice(i + 1, end).join('\n'),
      });
    i = end;
  }
  return { blocks, skipped };
}

/** Names a block declares or imports at its top level. */
function topLevelNames(source: ts.SourceFile): { names: Set<string>; hasImports: boolean } {
  const names = new Set<string>();
  let hasImports = false;
  for (const statement of source.statements) {
    if (ts.isImportDeclaration(statement)) {
      hasImports = true;
      const clause = statement.importClause;
      if (clause?.name) names.add(clause.name.text);
      const bindings = clause?.namedBindings;
      if (bindings && ts.isNamespaceImport(bindings)) names.add(bindings.name.text);
      if (bindings && ts.isNamedImports(bindings))
        for (const element of bindings.elements) names.add(element.name.text);
    } else if (ts.isVariableStatement(statement)) {
      for (const declaration of statement.declarationList.declarations)
        if (ts.isIdentifier(declaration.name)) names.add(declaration.name.text);
    } else if (
      (ts.isClassDeclaration(statement) ||
        ts.isFunctionDeclaration(statement) ||
        ts.isInterfaceDeclaration(statement) ||
        ts.isTypeAliasDeclaration(statement) ||
        ts.isEnumDeclaration(statement)) &&
      statement.name
    ) {
      names.add(statement.name.text);
    }
  }
  return { names, hasImports };
}

function identifiersIn(code: string): Set<string> {
  return new Set(code.match(/[A-Za-z_$][\w$]*/g) ?? []);
}

function compilerOptions(): ts.CompilerOptions {
  const configPath = join(ROOT, 'tsconfig.json');
  const config = ts.readConfigFile(configPath, (path) => ts.sys.readFile(path));
  const { options } = ts.convertCompilerOptionsFromJson(
    config.config.compilerOptions,
    ROOT,
    configPath,
  );
  return {
    ...options,
    noEmit: true,
    declaration: false,
    sourceMap: false,
    isolatedModules: false,
    // Top-level await, as in a `main.ts` example.
    module: ts.ModuleKind.ES2022,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    types: ['node'],
  };
}

/** Files parsed from disk, shared by both programs (parsing the libraries once). */
const parsed = new Map<string, ts.SourceFile | undefined>();

/** The host serving the blocks (and CONTEXT) from memory, everything else from disk. */
function createHost(options: ts.CompilerOptions, files: Map<string, string>): ts.CompilerHost {
  const host = ts.createCompilerHost(options, true);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const readFile = host.readFile.bind(host);
  host.getSourceFile = (name, languageVersion, onError, shouldCreate) => {
    const text = files.get(name);
    if (text !== undefined) return ts.createSourceFile(name, text, languageVersion, true);
    if (!parsed.has(name))
      parsed.set(name, getSourceFile(name, languageVersion, onError, shouldCreate));
    return parsed.get(name);
  };
  host.fileExists = (name) => files.has(name) || fileExists(name);
  host.readFile = (name) => files.get(name) ?? readFile(name);
  return host;
}

/** Every name each package exports (values and types). */
function packageExports(options: ts.CompilerOptions): Map<string, string> {
  const probe = join(BLOCKS_DIR, 'probe.ts');
  const text = PACKAGES.map((name, i) => `import * as p${i} from '${name}';`).join('\n');
  const program = ts.createProgram([probe], options, createHost(options, new Map([[probe, text]])));
  const checker = program.getTypeChecker();
  const exports = new Map<string, string>();
  for (const statement of program.getSourceFile(probe)!.statements) {
    const declaration = statement as ts.ImportDeclaration;
    const specifier = (declaration.moduleSpecifier as ts.StringLiteral).text;
    const module = checker.getSymbolAtLocation(declaration.moduleSpecifier);
    if (!module) throw new Error(`cannot resolve ${specifier}`);
    for (const symbol of checker.getExportsOfModule(module))
      if (!exports.has(symbol.name)) exports.set(symbol.name, specifier);
  }
  return exports;
}

describe('code blocks of README.md and docs/*.md', () => {
  it('type-check against the library', () => {
    const options = compilerOptions();
    const exports = packageExports(options);
    const files = new Map<string, string>();
    const origins = new Map<string, { block: Block; offset: number }>();
    const contextFile = join(BLOCKS_DIR, 'docs-context.d.ts');
    files.set(contextFile, CONTEXT);
    let blockCount = 0;
    let skippedCount = 0;
    for (const doc of markdownFiles()) {
      const { blocks, skipped } = extractBlocks(doc);
      skippedCount += skipped;
      for (const block of blocks) {
        blockCount++;
        const parsed = ts.createSourceFile('block.ts', block.code, ts.ScriptTarget.Latest);
        const { names, hasImports } = topLevelNames(parsed);
        const byPackage = new Map<string, string[]>();
        if (!hasImports) {
          for (const name of identifiersIn(block.code)) {
            const from = exports.get(name);
            if (from && !names.has(name))
              byPackage.set(from, [...(byPackage.get(from) ?? []), name]);
          }
        }
        const preamble = [...byPackage].map(
          ([from, imported]) => `import { ${imported.sort().join(', ')} } from '${from}';`,
        );
        const file = join(BLOCKS_DIR, `${block.doc.replace(/[/.]/g, '_')}_${block.line}.ts`);
        files.set(file, [...preamble, block.code, 'export {};'].join('\n'));
        origins.set(file, { block, offset: preamble.length });
      }
    }
    expect(blockCount).toBeGreaterThan(5); // the precondition: blocks were found

    const program = ts.createProgram(
      [contextFile, ...origins.keys()],
      options,
      createHost(options, files),
    );
    const problems: string[] = [];
    const report = (diagnostic: ts.Diagnostic): void => {
      const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
      const origin = diagnostic.file && origins.get(diagnostic.file.fileName);
      if (diagnostic.file && origin && diagnostic.start !== undefined) {
        const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
        const docLine = origin.block.line + line - origin.offset;
        const where =
          line < origin.offset ? `(import added for the block at line ${origin.block.line})` : '';
        problems.push(`${origin.block.doc}:${docLine}: ${message} ${where}`.trim());
      } else {
        problems.push(`${diagnostic.file?.fileName ?? '(global)'}: ${message}`);
      }
    };
    program.getOptionsDiagnostics().forEach(report);
    program.getGlobalDiagnostics().forEach(report);
    for (const file of [contextFile, ...origins.keys()]) {
      const source = program.getSourceFile(file)!;
      program.getSyntacticDiagnostics(source).forEach(report);
      program.getSemanticDiagnostics(source).forEach(report);
    }
    expect(problems).toEqual([]);
    expect(skippedCount).toBeLessThanOrEqual(blockCount / 4); // the marker is for rare fragments
  });
});
