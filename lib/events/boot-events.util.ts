import { ModuleRef } from '@nestjs/core';
import { EventEmitterReadinessWatcher } from '@nestjs/event-emitter';
import { PersistenceNotifier } from './persistence.notifier';

/**
 * Holds the boot load's emitter events until the event-emitter module has wired `@OnEvent`
 * handlers: its readiness watcher where it has one, else the end of this module's bootstrap hook.
 * Returns the function that releases them then (undefined when the watcher does it).
 */
export function holdBootEvents(
  moduleRef: ModuleRef,
  notifier: PersistenceNotifier,
): (() => void) | undefined {
  let watcher: EventEmitterReadinessWatcher | undefined;
  try {
    if (typeof EventEmitterReadinessWatcher === 'function') {
      watcher = moduleRef.get(EventEmitterReadinessWatcher, { strict: false });
    }
  } catch {
    watcher = undefined;
  }
  if (watcher) {
    notifier.holdEmitterUntil(watcher.waitUntilReady());
    return undefined;
  }
  let release: (() => void) | undefined;
  notifier.holdEmitterUntil(
    new Promise<void>((resolve) => {
      release = () => setImmediate(resolve);
    }),
  );
  return release;
}
