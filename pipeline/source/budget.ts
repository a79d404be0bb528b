/**
 * The key budget of a bounded run (--max-items N): a shared allowance of keys.
 *
 * Users reserve up to a page of keys before each request (`take`) and settle what
 * they really read (`settle`): the unused part returns to the allowance. A user that
 * finds the allowance reserved by others waits for their settlements instead of
 * giving up, so the run stops only once N keys were really read.
 *
 * Invariants (tested as a model over many seeded rounds in test/budget.test.ts):
 * - Who waits: only `take` callers, and only while nothing is left but some is
 *   reserved by others (that may come back).
 * - Who wakes them: every `settle`, and the stop signal.
 * - What a stop does: every waiter resolves 0 at once, and every later `take`
 *   resolves 0; a grant given before the stop must still be settled by its holder.
 * - Every positive grant is settled exactly once; reserved + read never exceeds N.
 * - `exhausted` is true exactly when N keys were read and nothing is reserved.
 */
export class KeyBudget {
  #remaining: number;
  #outstanding = 0;
  #waiters = new Set<() => void>();
  readonly #stop: AbortSignal | undefined;

  constructor(maxItems: number, stop?: AbortSignal) {
    this.#remaining = maxItems;
    this.#stop = stop;
    stop?.addEventListener('abort', () => this.#wake(), { once: true });
  }

  /** True once every key of the allowance was read. */
  get exhausted(): boolean {
    return this.#remaining <= 0 && this.#outstanding === 0;
  }

  /** Keys reserved and not settled yet. */
  get outstanding(): number {
    return this.#outstanding;
  }

  /** Reserves up to `want` keys; resolves 0 when the allowance is spent or the run stops. */
  async take(want: number): Promise<number> {
    while (this.#remaining <= 0 && this.#outstanding > 0 && !this.#stop?.aborted) {
      await new Promise<void>((resolve) => this.#waiters.add(resolve));
    }
    if (this.#stop?.aborted) return 0;
    const grant = Math.max(0, Math.min(want, this.#remaining));
    this.#remaining -= grant;
    this.#outstanding += grant;
    return grant;
  }

  /** Settles a reservation: `used` keys of `grant` were read, the rest returns to the allowance. */
  settle(grant: number, used: number): void {
    if (grant <= 0) return;
    if (used < 0 || used > grant || grant > this.#outstanding) throw new RangeError(`settle(${grant}, ${used}) with ${this.#outstanding} reserved`);
    this.#outstanding -= grant;
    this.#remaining += grant - used;
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = new Set();
    for (const w of waiters) w();
  }
}
