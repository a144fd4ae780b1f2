import { Injectable } from '@nestjs/common';
import { DiscoveryService, ModulesContainer } from '@nestjs/core';
import type { InstanceWrapper } from '@nestjs/core/injector/instance-wrapper';
import type { Module } from '@nestjs/core/injector/module';
import { FocusAdapter } from '../adapters/focus/focus.adapter';
import { MemoryAdapter } from '../adapters/memory/memory.adapter';
import { SessionAdapter } from '../adapters/session/session.adapter';
import { getPersistedStateMetadata } from '../decorators/persisted-state.decorator';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import { PersistenceFeature, PersistenceFeatureModule } from '../persistence-feature.module';
import { adapterNotSingleton } from '../persistence.messages';
import { AdapterCandidate } from './adapter.resolver';

const BUILT_IN: readonly unknown[] = [SessionAdapter, MemoryAdapter, FocusAdapter];

/**
 * Finds the adapters registered where they live, when the application initialises: providers of
 * `PersistenceModule.forFeature()` modules, and providers decorated with `@PersistedState()` in any
 * module (the built-in adapters are such providers of `PersistenceModule`). Built-in ones come first.
 */
@Injectable()
export class PersistenceAdapterExplorer {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly modules: ModulesContainer,
  ) {}

  explore(includeBuiltIn: boolean): AdapterCandidate[] {
    const builtIn: AdapterCandidate[] = [];
    const found: AdapterCandidate[] = [];
    for (const wrapper of this.discovery.getProviders()) {
      if (wrapper.instance instanceof PersistenceFeature) {
        for (const adapterClass of wrapper.instance.adapters) {
          const adapter = wrapper.host?.providers.get(adapterClass);
          if (adapter) found.push(this.candidate(adapter, adapterClass.name));
        }
      } else if (getPersistedStateMetadata(wrapper.metatype) && wrapper.metatype) {
        const candidate = this.candidate(wrapper, wrapper.metatype.name);
        if (!BUILT_IN.includes(wrapper.metatype)) {
          found.push(candidate);
        } else if (includeBuiltIn) {
          builtIn.push(candidate);
        }
      }
    }
    builtIn.sort(
      (a, b) =>
        BUILT_IN.indexOf((a.instance as object).constructor) -
        BUILT_IN.indexOf((b.instance as object).constructor),
    );
    return [...builtIn, ...found];
  }

  private candidate(wrapper: InstanceWrapper, label: string): AdapterCandidate {
    const where = this.describe(wrapper.host);
    if (!wrapper.isDependencyTreeStatic() || !wrapper.instance) {
      throw new PersistenceError(
        PersistenceErrorCode.InvalidAdapter,
        adapterNotSingleton(`${label} (${where})`),
        { operation: 'init' },
      );
    }
    return { instance: wrapper.instance, label, where };
  }

  /** `in CartModule`, or for a forFeature() module, the modules that import it. */
  private describe(host: Module | undefined): string {
    if (!host) return 'in an unknown module';
    if (!(host.metatype.prototype instanceof PersistenceFeatureModule)) return `in ${host.name}`;
    const importers = [...this.modules.values()]
      .filter((module) => module.imports.has(host))
      .map((module) => module.name);
    return `PersistenceModule.forFeature() in ${importers.join(', ') || 'an unknown module'}`;
  }
}
