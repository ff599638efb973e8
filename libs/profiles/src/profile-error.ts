/**
 * A profile that cannot be used. The message always names the file, the key path inside it
 * (`routes[3].cost.kind`) and the problem, so an operator can fix it without reading code.
 * The class name is part of the contract: `runMain` prints known errors as one line, without a stack.
 */
export class ProfileError extends Error {
  constructor(
    readonly file: string,
    readonly key: string,
    readonly problem: string,
  ) {
    super(`${file}: ${key}: ${problem}`);
    this.name = 'ProfileError';
  }
}
