// Where the test databases live, as set up by test/run.js: an admin connection string
// to the server under test and the template database built once by the migrations.
export const ADMIN_URL = requireEnv('TEST_ADMIN_URL');
export const TEMPLATE_DB = requireEnv('TEST_TEMPLATE_DB');

function requireEnv(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the tests with npm test (test/run.js prepares the server)`);
  return v;
}

export function urlFor(database: string): string {
  const u = new URL(ADMIN_URL);
  u.pathname = `/${database}`;
  return u.toString();
}
