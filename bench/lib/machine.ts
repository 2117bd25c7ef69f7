/** What the run ran on: the machine, and the versions of the servers it measured. */
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface Machine {
  cpuModel: string;
  cores: number;
  ramGb: number;
  os: string;
  kernel: string;
  node: string;
  hostname: string;
  servers: Record<string, string>;
}

export function describeMachine(): Omit<Machine, 'servers'> {
  let pretty = `${os.type()} ${os.release()}`;
  try {
    pretty = /^PRETTY_NAME="?([^"\n]+)"?/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? pretty;
  } catch {
    // not Linux, or no os-release
  }
  return {
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.cpus().length,
    ramGb: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    os: pretty,
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    hostname: os.hostname(),
  };
}
