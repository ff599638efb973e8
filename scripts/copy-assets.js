// Copies what tsc does not emit next to the compiled code: the .proto files, and the console's page and assets
// (its own files, and uPlot from node_modules: the console loads nothing from the internet).
const { cpSync, mkdirSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
cpSync(join(root, 'libs/contracts/src/proto'), join(root, 'dist/libs/contracts/src/proto'), { recursive: true });
const consoleDir = join(root, 'dist/apps/metering/src/console/public');
mkdirSync(consoleDir, { recursive: true });
cpSync(join(root, 'apps/metering/src/console/public'), consoleDir, { recursive: true });
for (const file of ['uPlot.iife.min.js', 'uPlot.min.css']) cpSync(join(root, 'node_modules/uplot/dist', file), join(consoleDir, file));
