import type { Logger } from 'pino';

type Listener<P> = (payload: P) => void | Promise<void>;

/**
 * A small typed event emitter. Listener failures (thrown or rejected) are logged and never reach the emitter's
 * caller: a Discord edit that fails must not stop the pipeline worker.
 */
export class TypedEmitter<Events extends { [K in keyof Events]: object }> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();
  constructor(private readonly logger?: Logger) {}

  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.listeners.get(event)?.delete(listener as Listener<never>);
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) {
      try {
        const result = (listener as Listener<Events[K]>)(payload);
        if (result && typeof (result as Promise<void>).catch === 'function') {
          (result as Promise<void>).catch((error: unknown) => this.report(event, error));
        }
      } catch (error) {
        this.report(event, error);
      }
    }
  }

  private report(event: keyof Events, error: unknown): void {
    this.logger?.error({ err: error, event: String(event) }, 'queue event listener failed');
  }
}
