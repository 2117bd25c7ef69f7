/** The bare workflows the bench's bare worker bundles (bench/bare-worker.ts). */
export { naiveBare } from './naive.js';
export { sagaShapeBare } from './saga-shape.js';
