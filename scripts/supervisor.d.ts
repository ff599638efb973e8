// Types of scripts/supervisor.js, for the tests.
export interface RestartRules { firstDelayMs: number; maxDelayMs: number; stableAfterMs: number; loopCrashes: number; loopWindowMs: number }
export type Exit = { code?: number | null; signal?: string | null; error?: string };
export type Next = { restart: true; delayMs: number; attempt: number } | { restart: false; exits: number; windowMs: number };
export declare const defaultRules: Readonly<RestartRules>;
export declare class RestartPolicy {
  constructor(rules?: Partial<RestartRules>);
  exited(now: number, upMs: number): Next;
}
export interface Handle { exited: Promise<Exit>; ready(): Promise<void>; stop(): Promise<void> }
export interface AppProcess {
  child: import('node:child_process').ChildProcess;
  exited: Promise<Exit>;
  gone(): boolean;
  tail: string[];
  ready(timeoutMs?: number): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}
export declare function launchApp(opts: {
  root: string;
  app: string;
  name?: string;
  env: NodeJS.ProcessEnv;
  nodeArgs?: string[];
  readyUrl: string;
  onLine?: (line: string) => void;
  tailLines?: number;
}): AppProcess;
export declare class Supervisor {
  constructor(opts: { say: (line: string) => void; onCrashLoop: (name: string) => void; rules?: Partial<RestartRules>; now?: () => number });
  start(name: string, launch: () => Promise<Handle>): Promise<void>;
  stopAll(order: string[]): Promise<void>;
}
