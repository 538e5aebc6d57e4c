/**
 * Suites that need a program the machine may not have (redis-server, chromium). Without it their tests are skipped
 * with the reason, one by one, so that Node's summary line counts them under "skipped": a `describe(…, { skip })`
 * hides its tests from the counts altogether ("skipped 0" while whole suites did not run).
 */
import { findExecutable } from '../../src/util/executables.js';
import { after, before, describe, test, type TestContext, type TestOptions } from 'node:test';

export { findExecutable };

/** Why a suite needing `program` cannot run here (with how to get it), or undefined when it is on PATH. */
export function missingProgram(program: string, needs: string, install = program): string | undefined {
  return findExecutable(program) ? undefined : `${program} is not on PATH (apt-get install -y ${install}); ${needs}`;
}

type TestBody = (t: TestContext) => void | Promise<void>;
/** `test`/`it` inside a suite of `describeNeeding`: the usual (name, fn) and (name, options, fn) forms. */
export type SuiteTest = (name: string, optionsOrBody: TestOptions | TestBody, body?: TestBody) => void;
/** `before`/`after` inside a suite of `describeNeeding`. */
export type SuiteHook = (fn: () => void | Promise<void>) => void;

export interface NeedingSuite {
  test: SuiteTest;
  it: SuiteTest;
  before: SuiteHook;
  after: SuiteHook;
}

/**
 * `describe(name, body)`, except that when `missing` (a reason) is set every test the body declares is registered as
 * skipped with that reason and its hooks are not run at all (they would start what is missing). The body declares
 * its tests and hooks with the functions it is given.
 */
export function describeNeeding(name: string, missing: string | undefined, body: (suite: NeedingSuite) => void): void {
  const declare: SuiteTest = (testName, optionsOrBody, maybeBody) => {
    const options = typeof optionsOrBody === 'function' ? {} : optionsOrBody;
    const fn = typeof optionsOrBody === 'function' ? optionsOrBody : maybeBody;
    void test(testName, missing === undefined ? options : { ...options, skip: missing }, fn);
  };
  const hook = (register: SuiteHook): SuiteHook => (missing === undefined ? register : () => undefined);
  describe(name, () => body({ test: declare, it: declare, before: hook((fn) => before(fn)), after: hook((fn) => after(fn)) }));
}
