import { dsProject } from '../../vitest.shared';

export default dsProject(import.meta.dirname);
