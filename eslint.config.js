// ESLint for the dashboard's scripts (browser modules) and their unit tests (Node).
import js from "@eslint/js";
import globals from "globals";

export default [
  { ignores: ["node_modules/", "src/stellar_reconciler/api/static/vendor/", ".venv/"] },
  js.configs.recommended,
  {
    files: ["src/stellar_reconciler/api/static/js/**/*.js"],
    languageOptions: {
      sourceType: "module",
      // uPlot is loaded by its own script tag before the modules run.
      globals: { ...globals.browser, uPlot: "readonly" },
    },
  },
  {
    files: ["tests/js/**/*.js", "eslint.config.js"],
    languageOptions: { sourceType: "module", globals: globals.node },
  },
  {
    rules: {
      eqeqeq: ["error", "always"],
      "no-var": "error",
      "prefer-const": "error",
      "no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
    },
  },
];
