import { ProfileError } from '../profile-error';

/** Runs `run` and returns the ProfileError it throws; any other outcome fails the test. */
export function rejection(run: () => unknown): ProfileError {
  try {
    run();
  } catch (e) {
    if (e instanceof ProfileError) return e;
    throw e;
  }
  throw new Error('expected a ProfileError, but the profile was accepted');
}
