/**
 * Items whose last save failed, so each failure is reported once for each change to the item, not
 * at every save: by identity for immutable adapters, by the problem's description otherwise.
 */
export class FailureMemo {
  private readonly collections = new Map<string, Map<string, { ref: unknown; message: string }>>();

  /** `message` undefined: compare the value by identity. */
  isSameFailure(collection: string, stem: string, value: unknown, message?: string): boolean {
    const memo = this.collections.get(collection)?.get(stem);
    if (!memo) return false;
    return message === undefined ? memo.ref === value : memo.message === message;
  }

  remember(collection: string, stem: string, value: unknown, message: string): void {
    let memos = this.collections.get(collection);
    if (!memos) {
      memos = new Map();
      this.collections.set(collection, memos);
    }
    memos.set(stem, { ref: value, message });
  }

  clear(collection: string, stem?: string): void {
    if (stem === undefined) this.collections.delete(collection);
    else this.collections.get(collection)?.delete(stem);
  }

  clearAll(): void {
    this.collections.clear();
  }
}
