/** The machine the numbers come from: CPU model, cores, memory, Node, date, load. */
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, platform, release, totalmem } from 'node:os';

export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
  readonly platform: string;
  readonly date: string;
  /** 1-, 5- and 15-minute load averages when the bench started: other work skews the numbers. */
  readonly loadAtStart: string;
}

/** CPU model from /proc/cpuinfo (os.cpus() where that is missing). */
function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1]!.trim();
  } catch {
    // not Linux
  }
  return cpus()[0]?.model ?? 'unknown CPU';
}

export function describeMachine(now = new Date()): Machine {
  return {
    cpu: cpuModel(),
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${platform()} ${release()}`,
    date: now.toISOString(),
    loadAtStart: loadavg().map((l) => l.toFixed(2)).join(' '),
  };
}
