// sphere: the built-in [mesh] shape = "sphere" of tumorpde as a gmsh source.
//   region   "tissue" (tag 1): the ball
//   boundary "outer"  (tag 1): its sphere
// Regenerate with   tumorpde mesh sphere -o sphere.msh --set radius=2 --set cell_size=0.25
SetFactory("OpenCASCADE");

DefineConstant[
  radius = {1.0, Name "Parameters/radius"},
  cx = {0.0, Name "Parameters/cx"},
  cy = {0.0, Name "Parameters/cy"},
  cz = {0.0, Name "Parameters/cz"},
  cell_size = {0.0, Name "Parameters/cell_size (0: radius/16)"}
];
h = radius / 16;
If (cell_size > 0)
  h = cell_size;
EndIf

Sphere(1) = {cx, cy, cz, radius};

Physical Volume("tissue", 1) = {1};
Physical Surface("outer", 1) = Boundary{ Volume{1}; };

Mesh.CharacteristicLengthMin = h;
Mesh.CharacteristicLengthMax = h;
