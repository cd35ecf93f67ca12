"""Models: loading real models and organisms as TransformerLens ``TransformerBridge``s (``loading``), access to the
Hugging Face Hub (``hub``), the one module that scores text with a model (``scoring``), the multiple-choice prompt
templates it scores (``templates``), batched greedy decoding (``generation``), documents packed into fixed-length
batches (``batches``), the paper-profile preflight (``doctor``) and the vendor-neutral products and optimisers that
make organisms and SAEs the same on Intel and AMD CPUs (``numerics``)."""
