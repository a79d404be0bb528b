/**
 * A bounded async channel between many producers (the users being paged) and one
 * consumer (the stream pipeline). `push` waits while the channel is full, which is
 * how backpressure from the writer reaches the fan-out: memory is bounded by the
 * capacity plus one page per producer, never by the number of users.
 */
export class Channel<T> implements AsyncIterable<T> {
  readonly #capacity: number;
  #items: T[] = [];
  #head = 0;
  #closed = false;
  #error: unknown = undefined;
  #failed = false;
  #spaceWaiters: (() => void)[] = [];
  #dataWaiter: (() => void) | undefined;

  constructor(capacity: number) {
    this.#capacity = Math.max(1, capacity);
  }

  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Slots the channel holds memory for (taken ones included until it compacts): bounded, whatever passed through. */
  get footprint(): number {
    return this.#items.length;
  }

  /** Adds an item, waiting first until there is room. */
  async push(item: T): Promise<void> {
    while (this.size >= this.#capacity && !this.#closed) {
      await new Promise<void>((resolve) => this.#spaceWaiters.push(resolve));
    }
    if (this.#closed) throw new Error('push on a closed channel');
    this.#items.push(item);
    this.#wakeConsumer();
  }

  /** No more items: the consumer ends after draining what is queued. */
  close(): void {
    this.#closed = true;
    this.#wakeConsumer();
    this.#wakeProducers();
  }

  /** Ends the consumer with `error` (after the queued items). */
  fail(error: unknown): void {
    this.#error = error;
    this.#failed = true;
    this.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      while (this.size > 0) {
        const item = this.#items[this.#head] as T;
        this.#items[this.#head] = undefined as T;
        this.#head++;
        if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
          this.#items = this.#items.slice(this.#head);
          this.#head = 0;
        }
        // Room now for at least one (push let it reach the capacity, never past it).
        this.#wakeProducers();
        yield item;
      }
      if (this.#closed) {
        if (this.#failed) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => (this.#dataWaiter = resolve));
    }
  }

  #wakeConsumer(): void {
    const w = this.#dataWaiter;
    this.#dataWaiter = undefined;
    w?.();
  }

  #wakeProducers(): void {
    const waiters = this.#spaceWaiters;
    this.#spaceWaiters = [];
    for (const w of waiters) w();
  }
}
