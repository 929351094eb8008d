// Calls the service through types generated from openapi/openapi.json (openapi-typescript) and
// openapi-fetch: plain object literals in, typed fields out, no casts. Prints what it received as JSON.
//
//   node build/client.js BASE_URL API_KEY
import createClient from "openapi-fetch";
import type { paths } from "./generated/api.js";

const [baseUrl, key] = process.argv.slice(2);
if (baseUrl === undefined || key === undefined) {
  throw new Error("usage: client.js BASE_URL API_KEY");
}
const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${key}` } });

const relu = await client.POST("/activate", { body: { activation: "relu", x: [-1, 0, 2] } });
if (relu.data === undefined) throw new Error(`activate: ${JSON.stringify(relu.error)}`);

const leaky = await client.POST("/activate", {
  body: { activation: "leaky_relu", x: [[-2, 0], [1, 3]], params: { negative_slope: 0.25 } },
});
if (leaky.data === undefined) throw new Error(`activate: ${JSON.stringify(leaky.error)}`);

const sigmoid = await client.POST("/derivative", { body: { activation: "sigmoid", x: 0 } });
if (sigmoid.data === undefined) throw new Error(`derivative: ${JSON.stringify(sigmoid.error)}`);

const vjp = await client.POST("/derivative", {
  body: { activation: "softmax", x: [40, 0], grad: [1, 0] },
});
if (vjp.data === undefined) throw new Error(`derivative: ${JSON.stringify(vjp.error)}`);

const entry = await client.GET("/activations/{name}", { params: { path: { name: "SiLU" } } });
if (entry.data === undefined) throw new Error(`get_activation: ${JSON.stringify(entry.error)}`);

// A 422 arrives as the typed problem body.
const refused = await client.POST("/activate", {
  body: { activation: "elu", x: [1], params: { alpha: -1 } },
});
if (refused.error === undefined) throw new Error("elu with alpha -1 was accepted");

console.log(
  JSON.stringify({
    relu: { y: relu.data.y, shape: relu.data.shape },
    leaky_relu: { y: leaky.data.y, params: leaky.data.params },
    sigmoid: { dydx: sigmoid.data.dydx ?? null },
    softmax: { grad_x: vjp.data.grad_x ?? null, dydx: vjp.data.dydx ?? null },
    catalog: { name: entry.data.name, params: entry.data.params.map((p) => p.name) },
    problem: { status: refused.response.status, fields: refused.error.errors.map((e) => e.field) },
  }),
);
