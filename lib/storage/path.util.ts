import { isAbsolute, relative } from 'node:path';

/** True when `child` is `parent` itself or lies below it (both absolute). */
export function isSameOrInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}
