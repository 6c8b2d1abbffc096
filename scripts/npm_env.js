'use strict';

// The environment for the npm and node runs of the install tests (__test__/install.test.js, scripts/test-arm64.js):
// none of the npm_* variables of an enclosing `npm run`, none of npm's chatter, and no compile cache (npm turns
// Node's on, in the system's temp directory, where nothing would clean it up).
function cleanNpmEnv(extra = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_|^INIT_CWD$/i.test(key)));
  return {
    ...env,
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
    NODE_DISABLE_COMPILE_CACHE: '1',
    ...extra,
  };
}

module.exports = { cleanNpmEnv };
