/** A store that holds a folder in this process. */
export interface StoreRegistration {
  /** True once the application that owns it has finished booting. */
  isBootstrapped(): boolean;
  /** Closes it without saving: its application never finished booting. */
  supersede(): Promise<void>;
}

/**
 * The store folders held in this process. An application whose boot failed after this module had
 * initialised (another module's `onModuleInit` threw) is never closed, yet it holds the folder: a
 * new store on the same folder in the same process supersedes such a store instead of being locked
 * out by it. A store whose application booted keeps the folder.
 */
const stores = new Map<string, StoreRegistration>();

export const openStores = {
  get: (root: string): StoreRegistration | undefined => stores.get(root),
  add: (root: string, store: StoreRegistration): void => {
    stores.set(root, store);
  },
  delete: (root: string, store: StoreRegistration): void => {
    if (stores.get(root) === store) stores.delete(root);
  },
};
