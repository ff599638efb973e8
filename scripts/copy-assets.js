// Copies what tsc does not emit (the .proto files) next to the compiled code.
const { cpSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
cpSync(join(root, 'libs/contracts/src/proto'), join(root, 'dist/libs/contracts/src/proto'), { recursive: true });
