import { join } from "node:path";

export const FIXTURES = join(__dirname, "..", "fixtures");
export const MODELS = join(FIXTURES, "models");
export const modelDir = (name: string) => join(MODELS, name);
