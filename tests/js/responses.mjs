// The OpenAI JS SDK's responses.create against the gateway, plain and
// streamed; prints one JSON line of what it saw for the pytest side to check.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.XROUTER_BASE_URL,
  apiKey: process.env.XROUTER_API_KEY,
  maxRetries: 0,
  timeout: 10_000,
});
const model = process.env.XROUTER_MODEL;

const plain = await client.responses.create({ model, input: "Привет из JS" });
const stream = await client.responses.create({ model, input: "Поток из JS", stream: true });
const kinds = [];
let streamed = "";
let completed = null;
for await (const event of stream) {
  kinds.push(event.type);
  if (event.type === "response.output_text.delta") streamed += event.delta;
  if (event.type === "response.completed") completed = event.response;
}
let missing = null;
try {
  await client.responses.retrieve("resp_does_not_exist");
} catch (error) {
  missing = { status: error.status, name: error.constructor.name };
}
console.log(
  JSON.stringify({
    plain: { id: plain.id, text: plain.output_text, usage: plain.usage },
    stream: {
      kinds,
      text: streamed,
      // Only non-streamed results get the output_text convenience field.
      completedText: completed?.output?.[0]?.content?.[0]?.text ?? null,
      status: completed?.status ?? null,
    },
    missing,
  }),
);
