/** Writes to stdout (results, machine output). */
export function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** Writes to stderr (problems, warnings, progress). */
export function err(text: string): void {
  process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** Bytes for people: `512 B`, `1.5 KiB`, `3.2 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Rows as columns padded to their widest cell, two spaces apart; the first row is the heading. */
export function table(rows: readonly (readonly string[])[], indent = '  '): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  }
  return rows
    .map(
      (row) =>
        indent +
        row
          .map((cell, i) => cell.padEnd(widths[i]))
          .join('  ')
          .trimEnd(),
    )
    .join('\n');
}

/** `{ json: 3, 'json-gzip': 1 }` → `json 3, json-gzip 1`; `prefix` goes before numeric keys. */
export function formatCounts(counts: Readonly<Record<string, number>>, prefix = ''): string {
  const entries = Object.entries(counts);
  return entries.length === 0
    ? '-'
    : entries.map(([k, n]) => `${/^\d+$/.test(k) ? prefix : ''}${k} ${n}`).join(', ');
}

/** `1 file`, `2 files`. */
export function plural(count: number, singular: string, pluralForm = `${singular}s`): string {
  return `${count} ${count === 1 ? singular : pluralForm}`;
}
