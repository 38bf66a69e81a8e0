// Runs @librechat/agents' run_tools_with_code / run_tools_with_bash once, the way LibreChat's
// ToolNode invokes them (toolMap and toolDefs in the tool call), against the server under test.
// argv[2]: JSON {baseUrl, apiKey, lang, code, requestId}; prints JSON {content, artifact} or {error}.
const { createProgrammaticToolCallingTool, createBashProgrammaticToolCallingTool } = require("@librechat/agents");
const { tool } = require("@langchain/core/tools");

const options = JSON.parse(process.argv[2]);
const weather = tool(async ({ city }) => ({ city, temp: 20 }), {
  name: "get-weather",
  description: "The weather of a city",
  schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
});
const broken = tool(async () => { throw new Error("the tool broke"); }, {
  name: "broken",
  description: "Always fails",
  schema: { type: "object", properties: {} },
});
const tools = [weather, broken];
const toolDefs = tools.map((t) => ({ name: t.name, description: t.description, parameters: t.schema }));
const create = options.lang === "bash" ? createBashProgrammaticToolCallingTool : createProgrammaticToolCallingTool;
const ptc = create({ baseUrl: options.baseUrl, authHeaders: { "X-API-Key": options.apiKey } });

async function main() {
  const controller = new AbortController();
  const message = await ptc.invoke(
    {
      id: "call_1",
      name: ptc.name,
      type: "tool_call",
      args: { code: options.code },
      toolMap: new Map(tools.map((t) => [t.name, t])),
      toolDefs,
      programmaticToolName: ptc.name,
    },
    { signal: controller.signal },
  );
  process.stdout.write(JSON.stringify({ content: message.content, artifact: message.artifact }));
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ error: String(error && error.message) }));
});
